*** Settings ***
Documentation       The petstore's smoke test, run by phasegate's command runner against the
...                 test target of the event: robot --variable TARGET:{target} ...
Library             RequestsLibrary

*** Variables ***
${TARGET}           http://petstore.petstore-test.svc:8080

*** Test Cases ***
The Petstore Answers
    ${answer}=    GET    ${TARGET}/    expected_status=200
    Should Contain    ${answer.text}    petstore
