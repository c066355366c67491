; (setq (a b c) list) sets each variable to the value at its place; setg and setqv do the same
(setq (a b c) '(1 2 3))
(println a b c)
(setg (x y) (list "u" "v"))
(println x y)
(println (setqv (p q) '(10 20)) p q)
; inside a function the variables are locals of the function
(defun split-pair (pair)
   (setq (head tail) pair)
   (+ head tail))
(println (split-pair '(4 5)))
(println (catch head))
; setg inside a function sets globals
(defun publish (l) (setg (g1 g2) l))
(publish '(first second))
(println g1 g2)
; elements may be any values, lists included
(setq (k v) '(key (1 2)))
(println k v)
; the sizes must match, and the value must be a list
(println (catch (setq (a b) '(1 2 3))))
(println (catch (setq (a b c) '(1 2))))
(println (catch (setq (a b) 12)))
(println a b c)
