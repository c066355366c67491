; A `]` with no `[` open closes every parenthesis of the top-level form (LispE::segmenting)
(defun f (x) (+ x 1]
(println (f 2))
(defun g (l)
   (if (nullp l) 0
      (+ (car l) (g (cdr l]
(println (g '(1 2 3 4)))
(println (+ 1 (* 2 3]
; while a `[` is open, `]` closes one level
(println [+ 1 [* 2 3]] 7)
(defpat h ([a b]) (list b a]
(println (h '(3 4)))
(println (list [1 2] (list 3 4]
; a `]` with nothing open is skipped
]
(println "a]b" (size "]]"]
(setq d {"k": (list 1 2)})
(println d)
