; defpat guard sub-patterns: (type_ (fn x)) binds x, then the call must be true
(defun ev (x) (eq 0 (% x 2)))
(defpat f ((integer_ (ev x))) 'even)
(defpat f (x) x)
(println (f 4) (f 5) (f "a"))
; predicate patterns: (numberp y) binds y and must be true
(defpat g ((integer_ x) (numberp y)) (+ x y))
(defpat g (x y) 'no)
(println (g 1 2) (g 1 2.5) (g 1 "2") (g "1" 2))
; the variable is the last symbol of the call (checkmod x 15 0) -> x
(defun checkmod (x m r) (eq r (% x m)))
(defpat fizzbuzz ((integer_ (checkmod x 15 0))) 'fizzbuzz)
(defpat fizzbuzz ((integer_ (checkmod x 3 0))) 'fizz)
(defpat fizzbuzz ((integer_ (checkmod x 5 0))) 'buzz)
(defpat fizzbuzz (x) x)
(println (map 'fizzbuzz (range 1 16 1)))
; a builtin as a guard, nested calls: (< 10 x) is true for x above 10
(defpat size_of ((< 10 n)) 'big)
(defpat size_of ((< n 0)) 'negative)
(defpat size_of (n) 'small)
(println (size_of 50) (size_of -3) (size_of 5))
; an error inside the guard means no match, not an error
(defpat safe ((integer_ (< 0 (/ 10 n)))) 'positive)
(defpat safe (n) 'other)
(println (safe 2) (safe 0) (safe -1))
; the variable may sit in a nested call: (= (% x 15) 0) binds x
(defpat fb ([integer_ (= (% x 15) 0)]) 'fizzbuzz)
(defpat fb ([integer_ (= (% x 3) 0)]) 'fizz)
(defpat fb (x) x)
(println (map 'fb '(3 5 15)))
; flip puts the variable last: (flip (in 'restaurant s)) runs (in s 'restaurant)
(defpat parcours ((string_ (flip (in 'restaurant s)))) (list 'ok s))
(defpat parcours (s) 'no)
(println (parcours "a good restaurant here") (parcours "nothing"))
(println (flip (- 10 2)) (flip '(1 2 3)) (flip {"a":1 "b":2}))
; a guard may call a function defined further down the file
(defpat kind ((small x)) 'small)
(defpat kind (x) 'big)
(println (kind 1) (kind 100))
(defun small (x) (< x 10))
; no clause matches: a clear error
(g 1)
