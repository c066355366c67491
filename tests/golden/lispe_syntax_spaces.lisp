; defspace puts functions in a name space; space runs code with them
(defspace truc
   (defun calculus (x y) (+ x y))
   (defun toto (u v) (* u v))
   (defun both (a b) (list (calculus a b) (toto a b))))

(defun calculus (x y) (+ x (* x y)))

(space truc
   (println (calculus 10 20))
   (println (toto 100 200))
   ; mainspace_ reaches the program's own functions from inside a space
   (println (space mainspace_ (calculus 10 5))))

; outside the space, calculus is the program's own and toto does not exist
(println (calculus 10 20))
(println (catch (toto 1 2)))
; a space function calls the space's functions wherever it is called from
(setq f (space truc both))
(println (f 3 4))
; the value of space is its last form's; of defspace, the space name
(println (space truc (calculus 1 1)))
(println (defspace empty_space))

; load a file into a space: its definitions go there, its other forms run as usual
(println (load "data/space_lib.lisp" lib))
(println space_lib_loaded)
(space lib
   (println (calculus 10 3) (twice_calculus 10 3)))
(println (calculus 10 3))
; the space name may be given quoted too
(load "data/space_lib.lisp" 'lib2)
(println (space lib2 (calculus 1 2)))
; an unknown space is an error
(println (catch (eval "(space nowhere (calculus 1 2))")))
