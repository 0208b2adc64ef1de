"""`ud` commands that live in their own module. Each module has `register(add)`, where
`add(name, fn, help)` returns an argparse sub-parser that already has `--json`; `fn(args,
out)` returns the exit code and reports through `out.result(data, text)` (see cli.Output).
List the module in cli.COMMAND_MODULES."""
