from bench.health.run import main

main()
