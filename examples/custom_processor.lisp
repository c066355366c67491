; custom_processor.lisp -- decoding rules written as Lisp lambdas, on SmolLM2-135M-Instruct.
; model: smollm2
;
; "logits_processor": (lambda (ids scores) ...) sees the token ids so far [rows, length] and the next
;   token's scores [rows, vocab], and returns changed scores (here: a word is banned).
; "stop_when": (lambda (text) ...) ends a row when its new text satisfies it.
; "on_step": (lambda (step params) ...) is called after every step with the current parameters and
;   may return changes ({"temperature":0.3}) that apply from the next step.
; torch_generate_trace records a generation as an s-expression; torch_replay runs it again.

(use 'lispe_torch)

(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))
(setq generator (torch_generator_create model "cpu"))
(setq question (tokenizer_chat '(("user" "What is the capital of France?"))))

(println "Plain answer:" (torch_generate_text generator question {"max_length":12}))

; ban the word " Paris" (its token id) with a processor
(setq paris (tokenizer_encode " Paris"))
(println "Token ids of \" Paris\":" paris)
(setq ban_paris (lambda (ids scores) (torch_ban_tokens scores paris)))
(println "Answer without Paris:" (torch_generate_text generator question {"max_length":12 "logits_processor":ban_paris}))
(torch_generator_config generator {"logits_processor":ban_paris})
(println "Active chain:" (torch_generator_chain generator))
(torch_generator_config generator {"logits_processor":nil})

; stop at the end of the first sentence, whatever the token that ends it
(println "First sentence only:"
         (torch_generate_text generator (tokenizer_chat '(("user" "Tell me about the Moon.")))
                              {"max_length":60 "stop_when":(lambda (text) (in text "."))}))

; sample freely for 4 tokens, then cool down: the change shows in the chain from step 4 on
(defun cool_down (step params)
  (if (or (= step 3) (= step 4))
      (println "  step" step "was sampled with" (@ params "chain")))
  (if (= step 3) {"temperature":0.2 "top_k":5}))
(setq config {"strategy":"sample" "temperature":1.2 "top_k":50 "seed":7 "max_length":20 "on_step":cool_down})
(setq trace (torch_generate_trace generator (tokenizer_chat '(("user" "Write a short line about the sea."))) config))
(println "Hooked sample:" (car (cdr (last trace))))

; the transcript holds the seed, the chain and every step: replay it from its printed form
(setq printed (string trace))
(println "Trace starts:" (left printed 80) "...")
(setq again (torch_replay generator printed))
(println "Replay diff (nil = identical):" (torch_trace_diff trace again))
