; shuffle changes the list it is given, in place, and returns that same list
; (this list is a strings container)
(setq deck (strings "a" "b" "c" "d" "e" "f" "g" "h" "i" "j"))
(setq same (shuffle deck))
(println (eq same deck) (size deck) (sort '< (clone deck)))

; a function that shuffles its argument: the caller's list is the shuffled one
(defun mix (l) (shuffle l) 'done)
(random_seed 11)
(setq n1 (integers 1 2 3 4 5 6 7 8 9 10 11 12))
(mix n1)
(random_seed 11)
(setq n2 (integers 1 2 3 4 5 6 7 8 9 10 11 12))
(mix n2)
; same seed, same order; the list still holds every number, in another order
(println (= n1 n2) (+ n1) (sort '< (clone n1)) (type n1) (= n1 (integers 1 2 3 4 5 6 7 8 9 10 11 12)))
; a list of one element and an empty list are left as they are
(println (shuffle (list 7)) (shuffle ()))
