"""A Jupyter kernel for LispE (`lispe_py.kernel.kernel.LispEKernel`, on ipykernel's `Kernel` base).

    lispe kernel install [--user] [--prefix P] [--name N]   # register it (lispe_py.kernel.install)
    python -m lispe_py.kernel -f CONNECTION_FILE           # what Jupyter runs (lispe_py.kernel.__main__)

Needs the `kernel` extra (`pip install 'lispe_py[kernel]'`: ipykernel, jupyter_client). See
docs/jupyter.md.
"""
