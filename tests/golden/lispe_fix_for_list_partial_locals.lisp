; for builds the list of its body's values, as LispE's composing for
(println (for i '(1 2 3 4) (* i i)))
(println (for i '(1 2 3 4) (if (eq i 3) (break)) (+ i 10)))
; a partial call inside a function sees the function's local variables
(setq l '(1 5 10 20))
(defun below (v) (filter '(< v) l))
(defun shift (v) (maplist '(+ v) l))
(defun under (v) (filterlist '(< _ v) l))
(println (below 7) (shift 100) (under 6))
; outside a function the quoted list is unchanged data
(setq v 3)
(println '(< v) (filter '(< v) l))
