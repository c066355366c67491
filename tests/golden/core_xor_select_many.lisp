(println (xor true nil true true) (xor nil nil))
(println (select nil (println "side effect") 5))
(println (and (< 1 2) (> 3 2)) (or (> 1 2) (< 3 2)))
