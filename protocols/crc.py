"""The lookup table of a reflected CRC-16, shared by CRC-16/MODBUS (protocols.modbus, polynomial
A001) and CRC-16/X.25 (protocols.dlt698, 8408); each module keeps its own loop over the table, which
runs for every frame."""


def reflected_table(poly: int) -> tuple:
    """The 256 entries of a table-driven CRC-16 with the reflected polynomial ``poly``."""
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)
