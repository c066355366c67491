(setq a 1 b 2 c (+ a b))
(println a b c)
(defun swap_pair (x y) (setq x y y x) (list x y))
(println (swap_pair 1 2))
