"""NVRTC compilation, the compile cache, and (with the CUDA backend) module loading and launch.

- :mod:`.nvrtc`: NVRTC through cuda-python, with errors that say what is missing;
- :mod:`.compiler`: CUDA C++ to cubin (and PTX) for an exact target, with the ptxas report;
- :mod:`.ptxas`: parsing that report (registers, spills, stack, shared memory);
- :mod:`.cache`: an in-memory and on-disk cache of compiled modules, safe across processes.
"""
