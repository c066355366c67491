; tail calls run in constant stack: a million steps
(defun countdown (n) (if (> n 0) (countdown (- n 1)) 'done))
(println (countdown 1000000))

; mutual tail recursion
(defun is_even (n) (if (= n 0) true (is_odd (- n 1))))
(defun is_odd (n) (if (= n 0) nil (is_even (- n 1))))
(println (is_even 100001) (is_odd 100001))

; accumulator in cond / block branches
(defun sum_to (n acc)
   (cond ((= n 0) acc)
         (true (block (setq acc (+ acc n)) (sum_to (- n 1) acc)))))
(println (sum_to 200000 0))
