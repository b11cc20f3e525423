"""infir: the InfiR recipe for small reasoning language and vision-language models."""

__version__ = "0.1.0"
