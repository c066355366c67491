; (f . g x) composes: it is (f (g x)); each segment gets the value of the rest as last argument
(println (sum . numbers 1 2 3))
(println (+ 1 . * 2 . - 10 4))
(println . reverse . list 1 2 3)
(setq r (size . list 1 2 . + 3 4))
(println r)
; the README way: several elements before the first '.'
(defun twice (x) (* 2 x))
(println (list 'a 'b . twice 21))
; a segment reduced to a function name calls it with the inner value only
(println (twice . twice . twice 1))
; '.' inside numbers, strings, atoms and quoted data is left alone
(println 1.5 ".5" (+ .5 .25) "a . b")
(println '(a . b) (size '(a . b)))
(setq a.b 3)
(println a.b)
; composition works inside functions and lambdas too
(defun norm (l) (sqrt . sum . map (\ (x) (* x x)) l))
(println (norm '(3 4)))
