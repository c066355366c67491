(println "hoisted use runs first")
(use (quote no_such_library))
