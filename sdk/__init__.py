"""llmsight SDK (placeholder until the SDK lands)."""
__version__ = "0.1.0"
