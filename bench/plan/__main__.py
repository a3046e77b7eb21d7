from bench.plan.run import main

main()
