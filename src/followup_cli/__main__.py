from followup_cli.cli import main

main()
