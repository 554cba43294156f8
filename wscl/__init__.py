"""Wake-Sleep Consolidated Learning (WSCL): a reference reproduction."""
__version__ = "0.1.0"
