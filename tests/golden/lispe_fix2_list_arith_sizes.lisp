; element-wise arithmetic on lists of different sizes keeps the first list's size; its elements
; past the end of the second list stay as they are
(println (+ '(1 2 3) '(10 20)))
(println (- (integers 5 7) (integers 1 2 3)))
(setq v (integers 3 8 15 24))
(println (- (cdr v) v))
(setq acc (integers 1 1 1 1))
(+= acc (integers 5 5))
(println acc)
(println (* (numbers 1 2) (numbers 3)))
