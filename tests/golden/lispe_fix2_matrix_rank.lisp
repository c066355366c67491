; matrix makes a matrix of numbers, rank slices it (-1: a whole axis), irank lists the slices
(setq m (matrix '((1 2 3) (4 5 6))))
(println m (type (@ m 0)))
(println (rank m 1) (rank m -1 2) (rank m 0 1))
(println (irank m -1))
(println (irank m 1))
(println (matrix 2 3) (matrix 1 2 7))
; a column of a matrix of numbers is a mask for // and a value for integers lists
(println (// (rank m -1 0) '(a b)))
(setq l (integers 1))
(push l (@ m 1 1))
(println l)
; a matrix rotates its rows; with true its rows move
(setq r (rho 2 3 (iota 6)))
(println (rotate r 1) (rotate r -1) (rotate r 1 true))
(println (rotate '((1 2) (3 4 5)) 1) (rotate "abc" 1))
(println (integer (> 2 1)) (integer (> 1 2)))
(matrix '((1 2) (3)))
