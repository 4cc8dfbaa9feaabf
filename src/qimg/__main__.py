from qimg.cli import main

main()
