"""Host tools for the MicroPython firmware: `fieldlink firmware build|flash|config`.

`config` compiles an agent TOML into the board's compact JSON (the contract of protocols/compiled.py),
`build` compiles protocols/ and firmware_py/ into an .mpy bundle, `flash` puts both on a board with
mpremote. Nothing here runs on the board, and firmware_py/ (board code only) imports nothing from here.
"""
