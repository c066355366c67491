(println 'x '(a b c) (quote (1 "two" 3.5)))
(println '(nil true false))
(println (type 'x) (type '(1)) (type ''x))
; a quoted list is a fresh copy each time: destructive changes do not alter the code
(defun fresh () (setq l '(1 2)) (push l 3) l)
(println (fresh) (fresh))
