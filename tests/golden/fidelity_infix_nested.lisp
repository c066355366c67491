; a parenthesized operand of an infix expression is an infix expression too (LispE's
; List::eval_infix), and the arguments of a call inside it are read the same way
(setq a 2)
(defun tenfold (x) (* x 10))
(println (• (1 + 2) * 3) (• a * (a + 1)) (• 1 + (2 * 3 + 1)))
(println (• (tenfold (1 + 2)) + 1) (• (sqrt (8 * 2)) - (1 - 3)))
(println (• (1 + 2)) (• 1 < 2 and ((3 * 2) = 6)) (• 2 * (list 1 2)))
(println (• ((1 + 1) * (2 + 2)) / 2))
(• (1 + ) * 3)
