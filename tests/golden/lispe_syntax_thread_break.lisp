; a break outside of any loop in a thread is reported by wait, naming the thread
(dethread stray (x) (threadstore "stray" x) (break))
(stray 1)
(println (catch (wait)))
(println (threadretrieve "stray"))
; once reported, the error is gone: the next wait succeeds
(println (wait))
