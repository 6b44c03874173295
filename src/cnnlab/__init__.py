"""cnnlab: learn and do image classification with MLPs and CNNs, starting from MNIST."""

__version__ = "0.1.0"
