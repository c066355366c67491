; (-= l 1) / (+= l v) on a list change that list in place, as LispE does:
; a caller that passed the list sees the change.
(defun older (fish) (-= fish 1) (+= fish (integers 0 0 10)) (size fish))
(setq school (integers 3 4 5))
(println (older school) school)
(setq alias school)
(*= school 2)
(println alias)
; a number variable is simply rebound
(setq n 5)
(setq m n)
(-= n 1)
(println n m)
