"""Shared orchestration for the CLI and the proxy: translate -> upstream -> translate.

Imports upstream, core, settings and errors; never server or cli. Both front ends call these
functions with the same request models, so they cannot disagree about a request.
"""
