; a flat list read through a shape (List_at_shape_eval, List_set_shape_eval)
(setq r (iota0 24))
; as many indexes as sizes: one element, row-major: 1*12 + 2*4 + 3
(println (atshape r '(2 3 4) 1 2 3))
; fewer indexes: the block they select, as a flat list of the same type
(println (@@@ r '(2 3 4) 1) (type (@@@ r '(2 3 4) 1)))
(println (@@@ r '(2 3 4) 1 2))
; -1 takes every value along its axis
(println (@@@ r '(2 3 4) 1 -1 2))
(println (@@@ r '(2 3 4) -1 1 2))
(println (@@@ r '(2 3 4) 1 -1))
(println (@@@ (iota0 6) '(2 3) -1 1))
; a lower negative index as the last negative one goes axis by axis: a transposition
(println (@@@ (iota0 6) '(2 3) -1 -2))
(println (@@@ (iota0 6) '(2 3) -1 -1))
(println (@@@ '(a b c d) '(2 2) 1 0))
; setshape writes in place and returns the list
(setq m (iota0 6))
(println (setshape m '(2 3) 1 1 40))
(println (set@@@ m '(2 3) 0 '(7 8 9)) m)
(@@@ r '(2 3 4) 1 3 0)
