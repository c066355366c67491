; maplist and its siblings take an unquoted call as a partial call: the element fills the `_`
; slot or goes at the end, the other arguments are evaluated for each element
(println (maplist (- 10) '(1 2 3)))
(println (maplist (- _ 10) '(1 2 3)))
(println (filterlist (< 1) '(0 1 2 3)))
(println (takelist (> 3) '(1 2 5 1)))
(println (droplist (< 3) '(1 2 5 1)))
(defun shift (k l) (mapcar (+ k) l))
(println (shift 100 '(1 2)))
; (apply op g x) is (apply op (g x)): what (maplist (apply '* g) l) computes
(println (apply '* (lambda (x) (list x 3)) 4))
(println (maplist (apply '+ (\(s) (integers (split s ",")))) '("1,2" "3,4,5")))
(println (apply '+ 1 '(2 3)))
; a lambda stays a function
(println (maplist (lambda (x) (* x x)) '(1 2 3)))
; a quoted partial call reads its variables where maplist runs, locals included
(defun counts (s) (maplist '(count s) '("a" "b" "z")))
(println (counts "abab a"))
