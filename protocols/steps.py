"""What the device steps of every protocol share (protocols/<protocol>/device.py).

A planned read is prepared once (`prepare(address, opts, frame, specs)`) and run on every poll
(`read_prepared(device, address, opts, prepared, seq, bad)`): a step that returns the values of the
request's points in spec order, None for a point without a value (reported by `bad(i, why)`). The
agent's driver prepares each request of its plan once; `read` with an `emit(i, value, why)` callback
(the board's bus) prepares on every call and emits the values in spec order.
"""


def emit_values(values: list, why: dict, emit) -> None:  # type: ignore[no-untyped-def]
    """`emit(i, value, None)`, or `emit(i, None, why[i])` for a point without a value, in spec order."""
    for i in range(len(values)):
        value = values[i]
        if value is None:
            emit(i, None, why.get(i, "missing"))
        else:
            emit(i, value, None)


def read(prepare, read_prepared, device: str, address: object, opts: object, frame: bytes, specs: list,  # type: ignore[no-untyped-def]
         seq: int, emit):
    """A protocol's `read` step from its `prepare` and `read_prepared`: the values go to `emit`."""
    why: dict = {}

    def bad(i, text):  # type: ignore[no-untyped-def]
        why[i] = text

    values = yield from read_prepared(device, address, opts, prepare(address, opts, frame, specs), seq, bad)
    emit_values(values, why, emit)
