; folds and scans without an initial value, and the infinite sequences
(println (foldl1 '- '(1 2 3)) (foldr1 '- '(1 2 3)) (foldl1 '+ ()))
(println (scanl '- 10 '(20 30 40)) (scanl1 '- '(20 30 40)) (scanr '+ 0 '(3 5 2 1)) (scanr1 '+ '(3 5 2 1)))
(println (scanl1 (lambda (accu x) (+ accu x 1)) '(1 2 3)) (scanr1 (lambda (x accu) (+ accu x 1)) '(1 2 3)))
(println (takewhile '(< 10) (irange 1 2)) (takewhile '(< 100) (map '* (irange 1 2))))
(println (take 10 (repeat 5)) (take 10 (cycle '(1 2 3))) (take 3 (drop 2 (irange 0 0.5))))
(println (car (irange 7 1)) (take 2 (cdr (irange 7 1))) (irangein 0 5 1) (irangein 0 1))
(println (take 3 (filter '(> 3) (irange 1 1))) (dropwhile '( < 10) '(1 3 5 9 10 3 4 12)))
(sum (irange 0 1))
