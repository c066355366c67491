; an error inside a thread is raised by the wait that follows
(dethread bad (x) (threadstore "bad" x) (car x))
(bad 42)
(println "launched")
(wait)
