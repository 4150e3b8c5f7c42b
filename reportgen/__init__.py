"""reportgen: reports on neural-network weights, to tell whether a model is trained well."""

__version__ = "0.1.0"
