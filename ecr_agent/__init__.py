"""Keep Amazon ECR Docker credentials fresh on a host."""

__version__ = "0.1.0"
