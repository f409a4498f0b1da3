"""The few shims that let one source run on CPython and MicroPython."""

try:
    from micropython import const  # type: ignore[import-not-found]
except ImportError:  # CPython

    def const(value):  # type: ignore[no-redef]
        """Identity on CPython; MicroPython folds the constant at compile time."""
        return value


__all__ = ["const"]
