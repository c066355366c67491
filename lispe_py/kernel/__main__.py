"""`python -m lispe_py.kernel -f CONNECTION_FILE`: run the LispE kernel (Jupyter starts it this way)."""
from __future__ import annotations


def main() -> None:
    from ipykernel.kernelapp import IPKernelApp

    from .kernel import LispEKernel

    IPKernelApp.launch_instance(kernel_class=LispEKernel)


if __name__ == "__main__":
    main()
