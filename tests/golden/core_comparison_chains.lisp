(println (< 1 2 3 4) (< 1 3 2) (<= 1 1 2) (> 5 4 3) (>= 5 5 6))
(println (= 2 2 2) (= 2 2 3) (= '(1 2) '(1 2)) (= "a" "b") (!= "a" "b"))
(println (= 1 1.0) (< 1 1.5) (> 2.5 2))
(println (maybe (< 1 "a") "cannot compare"))
