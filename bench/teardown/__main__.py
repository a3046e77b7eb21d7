from bench.teardown.run import main

main()
