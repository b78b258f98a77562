"""Container security: capabilities, seccomp, default devices and masked paths.

Every module here is pure: values in, values out, no I/O. Host facts (kernel version,
architecture, device nodes) are gathered by drivers and passed in.
"""
