(println "start")
(fread "no_such_file_for_lispe_tests.txt")
