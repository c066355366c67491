(setq l '(10 20 30))
(println (last l) (last "xyz") (last ()))
(println (nth l 0) (at l 1) (@ l 2) (@ l -1) (@ l -3))
(println (@ '((1 2) (3 4)) 1 0) (@ "hello" 1) (@ {"a":1} "a") (@ {"a":1} "b"))
