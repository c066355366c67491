; a loop left by (break) gives nil, whatever its body gave before
(setq n 0)
(println (while (< n 10) (+= n 1) (check (eq n 3) (break)) (* n 100)))
(println (loop w '(a b c d) (if (eq w 'c) (break)) w))
(println (loopcount 5 i (if (eq i 2) (break)) i))
(println (whilein v (integers 5 6 7 8) (< v 100) (if (eq v 7) (break)) v))
(println (lloop (p q) '(1 2 3) '(4 5 6) (if (eq p 3) (break)) (+ p q)))
; without a break, the value is the body's last one
(println (while (< n 5) (+= n 1) (* n 10)))
(println (loop w '(a b c) (list w w)))
