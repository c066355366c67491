; dethread functions run in threads; wait waits for all of them; threadstore keeps their results
(dethread square (n)
   (threadstore "squares" (* n n)))

(println (square 3))
(loopcount 5 into i (square (+ i 1)))
(println (wait))
(println (sort '< (threadretrieve "squares")))
(println (size (threadretrieve "squares")))
(println (threadretrieve "nothing here"))
(println (keys (threadretrieve)))
(threadclear "squares")
(println (threadretrieve "squares"))

; globals are shared (setg: a setq in a function makes a local, as in LispE);
; lock makes the read-and-update of the global atomic
(setq total 0)
(dethread add_many (k)
   (loopcount k
      (lock "total" (setg total (+ total 1)))))
(loopcount 8 (add_many 500))
(wait)
(println total)

; threadspace variables (seth) are shared and protected by the thread space's lock
(threadspace
   (seth counter 0)
   (seth (lo hi) '(100 -100)))
(dethread bump (x)
   (threadspace
      (+= counter x)
      (if (< x lo) (seth lo x))
      (if (> x hi) (seth hi x))))
(loop x '(5 7 11 13 17) (bump x))
(wait)
(threadspace (println counter lo hi))
(space thread (println (+ counter 1)))
; outside threadspace, counter is not visible
(println (catch counter))

; waiton blocks a thread until trigger wakes it
(dethread sleeper (name)
   (waiton "go")
   (threadstore "woken" name))
(sleeper "a")
(sleeper "b")
(while (< (size (threadretrieve "woken")) 2)
   (trigger "go")
   (sleep 1))
(wait)
(println (sort '< (threadretrieve "woken")))

; threads launched by threads are waited for too
(dethread child (n) (threadstore "tree" n))
(dethread parent (n) (child (* n 10)) (child (+ (* n 10) 1)))
(parent 1)
(parent 2)
(wait)
(println (sort '< (threadretrieve "tree")))

; a thread's parameters are its own: each call sees its own arguments
(dethread echo (a b) (threadstore "echo" (list a b)))
(echo 1 2)
(echo 3 4)
(wait)
(println (sort (\ (x y) (< (car x) (car y))) (threadretrieve "echo")))
(println (type square) square (sleep 0))

; threads recursing at the same time as the main program leave its call depth right
(defun deep (n) (if (= n 0) 0 (+ 1 (deep (- n 1)))))
(dethread dig (n) (threadstore "dig" (deep n)))
(loopcount 20 (dig 3000))
(println (deep 2000))
(wait)
(println (unique (threadretrieve "dig")) (deep 19900))
