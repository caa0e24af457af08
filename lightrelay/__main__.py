from lightrelay.cli import main

main()
