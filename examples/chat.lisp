; chat.lisp -- a small interactive chat with the default model, streaming its answers.
; model: smollm2
;
;   lispe examples/chat.lisp            (type a message, Enter; an empty line or Ctrl-D ends)
;   printf 'Hello!\n' | lispe examples/chat.lisp
;
; The conversation is kept as a list of (role text) pairs; each turn renders it with the model's chat
; template (tokenizer_chat), and torch_generate_text streams the answer through a callback. With
; "prompt_cache" the model keeps the conversation in its KV cache: each turn runs only the new
; message, not the whole history again.

(use 'lispe_torch)

(setq model (torch_hf_load_model "SmolLM2-135M-Instruct" {"prompt_cache":true}))
(setq generator (torch_generator_create model))
(torch_generator_config generator
    {"strategy":"top_p" "temperature":0.7 "top_p":0.9 "repetition_penalty":1.1 "max_length":200 "seed":0})

(setq history (list (list "system" "You are a friendly, helpful assistant. Keep answers short.")))
(println "Chatting with SmolLM2-135M-Instruct. An empty line or Ctrl-D ends the chat.")

(defun chat_turn (message)
    (push history (list "user" message))
    (print "bot> ")
    (setq answer (torch_generate_text generator (tokenizer_chat history)
                     {"callback":(lambda (id piece) (print piece))}))
    (println)
    (push history (list "assistant" (trim answer))))

(setq line (input "you> "))
(while (and line (!= (trim line) ""))
    (chat_turn line)
    (setq line (input "you> ")))
(println)
(println "Bye!")
