; solve with a matrix right-hand side (LispE's Matrice::solve): m·X = Y column by column.
(setq m (matrix '((2 1) (1 3))))
(setq y (matrix '((3 1) (5 2))))
(setq x (solve m y))
(println x)
(println (. m '+ '* x))
(println (solve m (matrix '((1 0) (0 1)))) (invert m))
(println (solve '((2 1) (1 3)) '(3 5)))
(println (maybe (solve m (matrix '((1 2 3) (4 5 6) (7 8 9)))) "sizes differ"))
