from wscl.cli import run_cli

run_cli()
