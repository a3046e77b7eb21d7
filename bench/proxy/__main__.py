from bench.proxy.run import main

main()
