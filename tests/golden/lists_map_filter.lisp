(println (map (lambda (x) (* x 2)) '(1 2 3)) (map 'upper '("a" "b")) (map '(+ 1) '(1 2)))
(println (mapcar (lambda (x) (+ x 1)) '(1 2)) (maplist 'size '("ab" "c")))
(println (filter '(< 3) '(1 5 2 4)) (filter (lambda (x) (> x 1)) '(1 2 3)) (filterlist 'numberp '(1 "a" 2.5)))
(println (map (lambda (x) x) ()) (filter 'numberp ()))
